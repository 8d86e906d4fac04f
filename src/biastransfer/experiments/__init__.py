"""Experiment plugins, one module (or small package) per protocol of the papers; see :mod:`.base` for what a
plugin owns. :mod:`biastransfer.plugins` imports every module here, which registers it."""
