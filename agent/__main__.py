"""`python -m agent` is the same as the `agora` console script."""

from agent.cli.main import main

if __name__ == "__main__":
    main()
