"""One lock for building torch modules in this process.

diffusers and PEFT build models inside accelerate's `init_empty_weights()`, which
patches `torch.nn.Module.register_parameter` for the whole process, not the thread:
a module built by another thread meanwhile gets "meta" parameters with no data, and
two such contexts overlapping can leave the patch in place for good (each restores
what it saw on entry). So every model load, LoRA load and demo build takes this lock;
loads are disk-bound, and a worker loads one model at a time anyway.
"""

from __future__ import annotations

import threading

construction_lock = threading.RLock()
