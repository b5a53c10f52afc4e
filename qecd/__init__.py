"""qecd: a real-time quantum error correction decoder service.

The installed distribution exposes one import namespace:

- ``qecd.codes``: codes, noise models, experiment specs and round layouts;
- ``qecd.decoder``: decoding backends, sliding-window stream decoding, sinter plugin;
- ``qecd.transport``: wire protocol, ZeroMQ server/client, shared-memory rings, emulator;
- ``qecd.bench``: latency and accuracy harnesses, reports and CI gates.

Example
-------
>>> import qecd
>>> qecd.__version__
'0.1.0'
"""

__version__ = "0.1.0"
