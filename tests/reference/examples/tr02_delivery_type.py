"""tracker.md, Choosing a delivery manager. Changed: the import."""

from aicm_manual import Tracker, DeliveryType

tracker = Tracker(delivery_type=DeliveryType.MEM_QUEUE)
