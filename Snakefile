# saeflow: from a transformer and a text corpus to a trained sparse autoencoder and a dashboard.
# This file is the table of contents; every stage lives in rules/<stage>.smk.

# config.yaml is the default configuration. A --configfile given on the command line replaces it
# (rather than merging into it), so a sweep file's `saes:` is the whole list of SAEs; keys it
# leaves out take the defaults of config.schema.yaml.
if not workflow.config_settings.configfiles:

    configfile: "config.yaml"


# `snakemake --report report.html` (after a run): metrics, training curves and the dashboard.
report: "report/workflow.rst"


include: "rules/common.smk"


wildcard_constraints:
    hook="|".join(re.escape(name) for name in HOOKS),
    chunk=r"chunk-\d\d\d\d+",  # 4 digits or more ({4,} would be cut at its comma)
    sae="|".join(re.escape(name) for name in config["saes"]),
    shard=r"\d\d\d+",


include: "rules/corpus.smk"
include: "rules/activations.smk"
include: "rules/saes.smk"
include: "rules/features.smk"
include: "rules/analysis.smk"
include: "rules/units.smk"
include: "rules/concepts.smk"
include: "rules/autointerp.smk"
include: "rules/vectors.smk"
include: "rules/interventions.smk"
include: "rules/dashboard.smk"


# Seconds-long jobs run in the Snakemake process itself on a cluster, not as SLURM jobs.
localrules:
    plan_chunks,
    analysis_params,
    gather_metrics,
    unit_map,
    training_curves,


rule all:
    input:
        final_targets,
    default_target: True
