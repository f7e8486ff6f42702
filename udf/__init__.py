"""openEO adapters (installed as ``kappamask_udf``).

- ``kappamask_udf``: the UDF itself (``apply_datacube``), as the backend runs it
- ``processes``: the user-defined process templates (``build_templates``, ``write_templates``) and their job
  options
- ``archive``: the dependency archive the UDF unpacks (``build_archive``)
- ``catalogue``: publication in the algorithm catalogue's layout (``publish``); ``cli``: ``kappamask openeo``
"""
