"""``motif`` with checkpoint writing patched to die by SIGKILL in the middle of saving the checkpoint of step
``MOTIF_KILL_SAVING_STEP`` (a single-file checkpoint is cut to half its bytes first; under FSDP2 each rank dies
once its shards are written, before the checkpoint is complete): what a kill during a save leaves behind.

    python kill_while_saving.py fit --config ...   (used by test_resume.py)
"""

import os
import signal

import lightning.pytorch.strategies.model_parallel as model_parallel
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from lightning_motif.cli import main

DOOMED = f"step={os.environ['MOTIF_KILL_SAVING_STEP']}.ckpt"
save_file = TorchCheckpointIO.save_checkpoint
save_shards = model_parallel._distributed_checkpoint_save


def save_half_of_the_file_then_die(self, checkpoint, path, storage_options=None):
    save_file(self, checkpoint, path, storage_options)
    if DOOMED in str(path):
        os.truncate(path, os.path.getsize(path) // 2)
        os.kill(os.getpid(), signal.SIGKILL)


def save_the_shards_then_die(state, path):
    save_shards(state, path)
    if DOOMED in str(path):
        os.kill(os.getpid(), signal.SIGKILL)


TorchCheckpointIO.save_checkpoint = save_half_of_the_file_then_die
model_parallel._distributed_checkpoint_save = save_the_shards_then_die

if __name__ == "__main__":
    main()
