"""``python -m cello1.cli …`` (also ``accelerate launch -m cello1.cli train grpo …``)."""

from cello1.cli import main

if __name__ == "__main__":
    main()
