"""The monthly accounting, as nodes with one runner.

- :mod:`.inputs` — the one reader of every input file (allocations, certificates, bills);
  ``supplymeter check`` calls the same readers.
- Pure figures from typed totals, no store and no file system: :mod:`.scope3` (a month's
  meters, sites and suppliers: location- and market-based, allocation, data quality),
  :mod:`.products` (energy and emissions to products), :mod:`.reconcile` (meters against
  bills).
- :mod:`.runner` — the only module of the accounting that talks to the store: it gathers a
  month's totals, computes the month **once** and hands the same figures to every output.
- Outputs, each a versioned dataset under the one policy of :mod:`.versions` (a version is
  immutable; a new one only when its content changes, with a diff whose rows carry their
  reasons): :mod:`.export` and :mod:`.report` (scope-3 files and workbook), :mod:`.footprints`
  (PACT product footprints), :mod:`.cbam` (the CBAM workbook).
"""
