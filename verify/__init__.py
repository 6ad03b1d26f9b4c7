"""Verify offline outputs against the checkpoint: metrics, loss_check, the precision doctor."""
