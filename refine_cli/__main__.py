"""`python -m refine_cli` runs the CLI (torchrun uses this entry point)."""

from refine_cli.cli.app import main

if __name__ == "__main__":
    main()
