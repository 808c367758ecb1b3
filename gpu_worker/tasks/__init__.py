"""SAQ tasks of the render worker: `export.export_video`, the `reconcile` cron, and `enqueue.enqueue_export`
(the one place that sets an export job's parameters, for the API and the reconciler alike)."""
