"""Training programs for adaptive-dff: feature network, flow network, end-to-end
DFF and the decision network.

The programs are the subject of the training milestone; this package holds the
import name until then.
"""

__all__: list[str] = []
