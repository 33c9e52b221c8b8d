"""The training loop (Accelerate), its phases, real-image stream and logging."""
