# Cohort-level reports (logic: ghanet_pipeline/report.py).


rule slide_report:
    input:
        stats=[f"{RESULTS}/segment/{sid}.stats.json" for sid in SLIDES],
        coords=[f"{RESULTS}/tile/{sid}.h5" for sid in SLIDES],
        sheets=[s for s in (SHEET, PREDICT_SHEET if PREDICT_SLIDES else None) if s],  # their extra columns are carried
    output:
        report(f"{RESULTS}/report/slides.csv", caption="../report/slides.rst", category="Slides"),
    conda:
        "../../envs/slides.yaml"
    log:
        f"{RESULTS}/logs/slide_report.log",
    benchmark:
        f"{RESULTS}/benchmarks/slide_report.tsv"
    shell:
        "python -m ghanet_pipeline slide-report --stats {input.stats:q} --coords {input.coords:q}"
        " --sheets {input.sheets:q} --out {output:q} 2> {log:q}"
