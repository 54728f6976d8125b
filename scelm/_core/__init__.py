"""The engine: numpy, scipy and torch only, no AnnData."""
