"""Custom PyTensor operations used by theanets layers."""
