"""``motif ablate``: run a grid of ``motif fit`` variants x learning rates x seeds, and report what it shows."""
