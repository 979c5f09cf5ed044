"""What runs on a Ray worker: one trial (costs, latency, proxy training), the warm data it
keeps between trials, the device gate. Imports ``search.setup`` and ``search.methods``."""
