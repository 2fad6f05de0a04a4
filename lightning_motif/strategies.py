"""FSDP2Strategy: Lightning's ModelParallelStrategy with FSDP2 over every device (data parallel = world size,
tensor parallel 1), so a config names no device counts. ``MotifLM.configure_model`` shards each block on its
"data_parallel" mesh dimension (``lightning_motif.parallelism``); checkpoints are distributed-checkpoint folders
(each rank writes its shards), which ``motif fit --ckpt_path last`` resumes on any number of devices.
"""

from datetime import timedelta

from lightning.pytorch.strategies import ModelParallelStrategy
from torch.distributed.constants import default_pg_timeout


class FSDP2Strategy(ModelParallelStrategy):
    def __init__(self, save_distributed_checkpoint: bool = True, process_group_backend: str | None = None,
                 timeout: timedelta | None = default_pg_timeout) -> None:
        super().__init__(data_parallel_size="auto", tensor_parallel_size=1,
                         save_distributed_checkpoint=save_distributed_checkpoint,
                         process_group_backend=process_group_backend, timeout=timeout)

    def setup_environment(self) -> None:
        self._data_parallel_size = self.num_nodes * self.num_processes
        super().setup_environment()
