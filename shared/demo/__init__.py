"""Demo assets: the shipped base model and the per-site domain corpora.

- :mod:`~organfed.shared.demo.corpora`: ``build_demo_corpora(out_dir)``, the general corpus and one domain
  corpus per demo site (clinical, code, finance), deterministic and cached.
- :mod:`~organfed.shared.demo.base_model`: ``demo_base_dir()``, the small GPT-2 pretrained on the general corpus.

Provenance, licences and measurements: docs/demo-data.md.
"""
