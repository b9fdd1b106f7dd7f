"""``python -m device.cli``: the same command line as the ``callbox`` console script."""

from device.cli import main

if __name__ == "__main__":
    main()
