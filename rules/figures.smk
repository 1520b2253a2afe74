# The figures (nextrl.analysis.figures.FIGURES), one rule each, each drawn from one summary table: no model is loaded, so
# `snakemake figures --forcerun summary` redraws every table and figure in seconds. Each PNG is a report item
# (`snakemake --report results/<experiment>/report.html`) with its caption from workflow/report/.
localrules:
    figures,
    figure_curves,
    figure_energy,
    figure_linearity,
    figure_alpha,
    figure_probe,
    figure_steps,


rule figure_curves:
    input:
        SUMMARY,
    output:
        **figure_outputs("curves", "1. Learning curves"),
    params:
        **STAGE,
    log:
        f"{RESULTS}/logs/figures/curves.log",
    conda:
        "../envs/cpu.yaml"
    shell:
        draw("curves")


rule figure_energy:
    input:
        SUMMARY,
    output:
        **figure_outputs("energy", "3. The trajectory (paper §2)"),
    params:
        **STAGE,
    log:
        f"{RESULTS}/logs/figures/energy.log",
    conda:
        "../envs/cpu.yaml"
    shell:
        draw("energy")


rule figure_linearity:
    input:
        SUMMARY,
    output:
        **figure_outputs("linearity", "3. The trajectory (paper §2)"),
    params:
        **STAGE,
    log:
        f"{RESULTS}/logs/figures/linearity.log",
    conda:
        "../envs/cpu.yaml"
    shell:
        draw("linearity")


rule figure_alpha:
    input:
        SUMMARY,
    output:
        **figure_outputs("alpha", "4. Jumps"),
    params:
        **STAGE,
    log:
        f"{RESULTS}/logs/figures/alpha.log",
    conda:
        "../envs/cpu.yaml"
    shell:
        draw("alpha")


rule figure_probe:
    input:
        SUMMARY,
    output:
        **figure_outputs("probe", "4. Jumps"),
    params:
        **STAGE,
    log:
        f"{RESULTS}/logs/figures/probe.log",
    conda:
        "../envs/cpu.yaml"
    shell:
        draw("probe")


rule figure_steps:
    input:
        SUMMARY,
    output:
        **figure_outputs("steps", "2. Steps and cost"),
    params:
        **STAGE,
    log:
        f"{RESULTS}/logs/figures/steps.log",
    conda:
        "../envs/cpu.yaml"
    shell:
        draw("steps")


rule figures:
    input:
        [getattr(rules, f"figure_{name}").output for name in FIGURE_NAMES],
