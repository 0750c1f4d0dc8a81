"""Contracts and pure kernels shared by the forwarder and the Flink job."""
