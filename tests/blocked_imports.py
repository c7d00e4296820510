"""Code that makes a subprocess look like an install of the schedulers alone."""

# Run first in a subprocess (``python -c``): every module of the package's dependencies but numpy and OpenCV fails to
# import, as in an install made with ``pip install --no-deps`` beside numpy and OpenCV alone.
WITHOUT_HEAVY_DEPENDENCIES = (
    "import sys, importlib.abc\n"
    "class Blocked(importlib.abc.MetaPathFinder):\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] in {'tensorflow', 'keras', 'sklearn', 'scipy', 'matplotlib', 'PIL',\n"
    "                                  'tensorboard'}:\n"
    "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
    "sys.meta_path.insert(0, Blocked())\n"
)
