# saeflow: from a transformer and a text corpus to a trained sparse autoencoder and a dashboard.
# This file is the table of contents; every stage lives in rules/<stage>.smk.

configfile: "config.yaml"


include: "rules/common.smk"


wildcard_constraints:
    layer=r"\d+",
    chunk=r"chunk-\d{4}",


include: "rules/corpus.smk"
include: "rules/activations.smk"


rule all:
    input:
        final_targets(),
    default_target: True
