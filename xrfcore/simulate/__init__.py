"""Physics simulator of Avaatech core-scanner spectra (10 kV) with known composition.

Everything it produces is SIMULATED and labelled so. Modules:

* ``tables``    xraylib pre-tabulation per geometry (attenuation, line production, scatter)
* ``tube``      Ebel Rh tube spectrum with Rh L lines
* ``detector``  SDD efficiency and response, pile-up, dead time
* ``forward``   ``Simulator(head).simulate(w, nuisances, rng)``: batched forward model
* ``heads``     named scanner heads, domain randomisation, per-spectrum nuisances
* ``sediment``  components + pore water -> element mass fractions
* ``downcore``  downcore series (orbital cycles, red noise, events, porosity)
* ``writers``   Avaatech raw core-series folders + lab-sample and truth CSVs
* ``archive``   simulated spectra straight into an HDF5 project (pretraining)
* ``realism``   comparison with real bAxil/xlsx exports (see REALISM.md)
* ``areas``     quick window areas

Entry points: ``writers.simulate_folder`` (``xrfcore simulate``) and
``archive.simulate_archive`` (``xrfcore simulate-archive``).
"""
