"""honed: fine-tune, distill, quantize, evaluate, benchmark and serve small language models."""

import logging

__version__ = "0.1.0"

# Import-time chatter of optional kernels that cannot matter on this path: torchao's wheel
# carries CUDA-only extensions built for another Python, torch's pytree deprecation notes,
# bitsandbytes' optional `kernels` package. Real errors still come through.
for _name in ("torchao", "torch.utils._pytree", "bitsandbytes"):
    logging.getLogger(_name).setLevel(logging.ERROR)
