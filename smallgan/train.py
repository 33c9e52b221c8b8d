"""`python -m smallgan.train` and `accelerate launch -m smallgan.train`: the training command."""

from smallgan.cli.train import main

if __name__ == "__main__":
    main()
