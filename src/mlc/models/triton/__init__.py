"""The fused Triton kernels for CUDA GPUs: the GRU recurrence and the MLP head with its loss, and the
precision modes of their matrix products. Triton is an optional extra (`pip install mlc[gpu]`);
`triton_available` says whether these can run on a device."""
