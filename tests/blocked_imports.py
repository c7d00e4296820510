"""Code that makes a subprocess look like an install of the schedulers alone."""

# Run first in a subprocess (``python -c``, from the repository root): from then on a module whose
# top-level package is neither the standard library's, numpy, OpenCV nor this repository's fails to
# import, as in an install made with ``pip install --no-deps`` beside numpy and OpenCV alone (an
# allowlist, so the heavy dependencies' own dependencies are blocked too).
WITHOUT_HEAVY_DEPENDENCIES = (
    "import sys, importlib.abc\n"
    "ALLOWED = set(sys.stdlib_module_names) | {'numpy', 'cv2', 'schedulers', 'adaptive_dff', 'tests'}\n"
    "class Blocked(importlib.abc.MetaPathFinder):\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] not in ALLOWED:\n"
    "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
    "sys.meta_path.insert(0, Blocked())\n"
)
