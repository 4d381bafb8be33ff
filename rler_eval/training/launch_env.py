"""The environment `accelerate launch` gives each training process, derived with accelerate's own code.

Why: a recipe's `GRPOConfig` is built inside that environment, and some failures only
show there (e.g. `mixed_precision` in an accelerate config next to a DeepSpeed JSON makes
TrainingArguments refuse to start). Building the config in the test process's own
environment hides them. `launcher_env` runs accelerate's argument parser, its config-file
validation (`_validate_launch_command`) and the same `prepare_*_env` helper that
`launch_command` would call, without starting any process. The only mirrored part is
`launch_command`'s dispatch and its `deepspeed_fields_from_accelerate_config` line
(accelerate 1.15, accelerate/commands/launch.py, `launch_command`).
"""

from __future__ import annotations


def launcher_env(config_file, *flags: str) -> dict[str, str]:
    """The environment variables accelerate would add or change for `config_file` (+ CLI flags)."""
    import os

    _, env, _ = _prepare(config_file, *flags)
    return {k: v for k, v in env.items() if os.environ.get(k) != v}


def launcher(config_file, *flags: str):
    """(command, launch arguments): the `deepspeed ...` command accelerate would run instead
    of torchrun (None when it uses torchrun), and the arguments torchrun would get."""
    cmd, _, args = _prepare(config_file, *flags)
    return cmd, args


def _prepare(config_file, *flags: str):
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import (prepare_deepspeed_cmd_env, prepare_multi_gpu_env,
                                         prepare_simple_launcher_cmd_env)

    argv = ["--config_file", str(config_file), "--main_process_port", "0", *flags, "-m", "rler_eval.cli", "train"]
    args, defaults, mp_from_config = _validate_launch_command(launch_command_parser().parse_args(argv))
    if args.use_deepspeed and not args.cpu:
        fields = list(defaults.deepspeed_config.keys()) if defaults else []
        if mp_from_config:
            fields.append("mixed_precision")
        args.deepspeed_fields_from_accelerate_config = ",".join(fields)
        cmd, env = prepare_deepspeed_cmd_env(args)
    elif (args.multi_gpu or args.use_fsdp) and not args.cpu:
        cmd, env = None, prepare_multi_gpu_env(args)
    else:
        cmd, env = prepare_simple_launcher_cmd_env(args)
    return cmd, env, args
