# Auto-interp hook, off by default: per-feature prompts for an LLM labeller, and the labels an
# OpenAI-compatible endpoint returns. The rules exist only when configured, so neither can run
# otherwise, not even when its file is asked for by name.

if config["autointerp"]["enabled"]:

    rule autointerp_prompts:
        input:
            top=path("analysis_table", table="top_examples"),
            quantile=path("analysis_table", table="quantile_examples"),
            tokens=PATHS["tokens"],
            documents=PATHS["documents"],
        output:
            prompts=PATHS["autointerp_prompts"],
        params:
            examples=config["autointerp"]["examples"],
            quantile_examples=config["autointerp"]["quantile_examples"],
        threads: 1
        resources:
            mem_mb=per_attempt(2000),
            runtime=per_attempt(10),
        log:
            log_path("autointerp_prompts", "{sae}"),
        benchmark:
            benchmark_path("autointerp_prompts", "{sae}")
        conda:
            "../envs/tables.yaml"
        script:
            "../scripts/autointerp_prompts.py"

    if config["autointerp"]["endpoint"]:

        # Sequential requests, about a second each: hours for a wide SAE unless max_features caps it.
        # The key stays in the job's environment (autointerp.api_key_env names it), out of params.
        rule autointerp_labels:
            input:
                prompts=PATHS["autointerp_prompts"],
            output:
                labels=PATHS["llm_labels"],
            params:
                settings=config["autointerp"],
            threads: 1
            resources:
                mem_mb=per_attempt(2000),
                runtime=per_attempt(720),
            log:
                log_path("autointerp_labels", "{sae}"),
            benchmark:
                benchmark_path("autointerp_labels", "{sae}")
            conda:
                "../envs/tables.yaml"
            script:
                "../scripts/autointerp_labels.py"
