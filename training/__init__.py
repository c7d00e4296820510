"""Training programs for adaptive-dff (``adaptive-dff train ...``).

Each program takes a validated configuration (:mod:`training.config`: named
presets such as ``smoke``, or a JSON file), trains in a run folder that it
can resume from after any interruption (:mod:`training.runtime`), and ends
with a ``model.keras`` and a ``metrics.json``. The programs: ``flow``
(flow-network pretraining on FlyingChairs-style pairs, :mod:`training.flow`),
``features`` (the feature network and head per frame, :mod:`training.features`),
``dff`` (end to end on (key, current) pairs, :mod:`training.dff`) and
``decision`` (DVSNet's decision network from videos,
:mod:`training.decision`).
"""

import logging

import adaptive_dff  # noqa: F401  (its import stops with a clear error when Keras runs on another backend)

# Training programs log under "training..." (the command line shows it; see adaptive_dff.console).
logging.getLogger(__name__).addHandler(logging.NullHandler())
