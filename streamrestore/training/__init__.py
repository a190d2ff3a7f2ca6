"""Training small restoration networks on synthetic degradations: ``streamrestore train``.

``degrade`` makes a low-quality input from a clean patch, ``data`` cuts patches from a folder of clean
images, ``loop`` trains, validates, checkpoints and exports weights the ``model`` stage detects.
"""
