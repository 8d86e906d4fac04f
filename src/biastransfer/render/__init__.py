"""Rendering helpers that the report page (:mod:`biastransfer.report.page`) and the experiment plugins' sections
both use: :mod:`.markup` (``Page``, ``Section``, escaped cells, tables, embedded figures) and :mod:`.plots` (figure
helpers, palettes, metric names and ranges). It imports neither the plugins nor the report, so no folder imports
back up."""
