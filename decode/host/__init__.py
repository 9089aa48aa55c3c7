"""The host side of the one loop: argument checks and padding, placement, prefix caches, results, the decoder."""
