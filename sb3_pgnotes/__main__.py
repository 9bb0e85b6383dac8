"""``python -m sb3_pgnotes <script> ...``: see :mod:`sb3_pgnotes.zoo.cli`."""

from sb3_pgnotes.zoo.cli import main

if __name__ == "__main__":
    main()
