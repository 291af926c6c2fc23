# Every SAE's analysis artifacts -> one self-contained results/dashboard.html.


rule dashboard:
    input:
        unpack(dashboard_inputs),
    output:
        html=report(PATHS["dashboard"], caption="../report/dashboard.rst", category="Dashboard"),
    params:
        saes=list(config["saes"]),
        owners=dashboard_owners(),
        model=MODEL_NAME,
    threads: 1
    resources:
        mem_mb=per_attempt(4000),
        runtime=per_attempt(30),
    log:
        log_path("dashboard"),
    benchmark:
        benchmark_path("dashboard")
    conda:
        "../envs/tables.yaml"
    script:
        "../scripts/dashboard.py"
