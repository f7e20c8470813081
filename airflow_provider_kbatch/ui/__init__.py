"""The provider's Airflow UI plugin: per-index views of kbatch stages (see :mod:`.plugin`)."""
