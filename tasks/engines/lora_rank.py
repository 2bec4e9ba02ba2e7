"""Entry point of one training rank under `accelerate launch` (tasks/engines/lora.py): the rank is tied to its
launcher before anything heavy is imported. torchrun gives each rank a session of its own, so a rank that lost its
launcher during the seconds of its imports would otherwise train on alone until gloo or NCCL timed out."""
import os

from tasks.engines.orphans import STAGE_PID_ENV, die_with_parent, libc_prctl

if __name__ == "__main__":
    stage = os.environ.get(STAGE_PID_ENV)
    die_with_parent(libc_prctl(), grandparent=int(stage) if stage else None)
    from tasks.engines.lora import main

    main()
