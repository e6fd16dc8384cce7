"""The guestbook's worker: for now it only says it is alive, once a minute, until stopped."""

import os
import signal
import sys
import threading

stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())

instance = os.environ.get("ROLE_INSTANCE_ID", "unknown instance")
print(f"worker {instance} started", flush=True)
while not stop.wait(60):
    print(f"worker {instance} alive", flush=True)
print(f"worker {instance} stopping", flush=True)
sys.exit(0)
