"""command lines (python -m dogbreed.cli.<name>); nothing imports them."""
