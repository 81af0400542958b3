"""Config analysis with istioctl's message codes (`meshpilot analyze`).

- catalogue.py: Istio's message table (code, name, level, template);
- message.py: a message and its origin, printed as istioctl prints it;
- model.py: the resolved input analyzers read (typed resources of every namespace);
- framework.py: Analyzer (name, codes, pure function) and the run with istioctl's
  namespace filter, suppressions, sorting and de-duplication;
- hosts.py: Istio's analyzer host lookups (deliberately not the translator's);
- analyzers/: one module per resource kind, named after Istio's analyzers;
- sources.py: files (with istioctl's line references), the control plane, defaults;
- conflicts.py: the IST0109 / DestinationRule-merge warnings `apply` prints.
"""
