"""What people look at: figures and the end-of-run summary."""
