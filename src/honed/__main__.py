"""Entry point for `python -m honed` (and `accelerate launch -m honed ...`)."""

from honed.cli import main

if __name__ == "__main__":
    main()
