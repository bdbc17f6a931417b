"""Verify a Parquet file of pairs on Spark (``mapInArrow``) into a folder of Parquet decisions:
the rows of ``facegate batch``, one engine per Spark Python worker.

    python spark_verify.py --input pairs.parquet --output decisions/ --images /srv/photos \
        [--master local[2]] [--partitions 2] [--device cpu]
"""

import argparse
import os
import sys

from pyspark.sql import SparkSession

from facegate.spark import OUTPUT_SCHEMA, verify_arrow

ap = argparse.ArgumentParser()
ap.add_argument("--input", required=True)
ap.add_argument("--output", required=True)
ap.add_argument("--images", help="the folder path columns are under (binary columns need none)")
ap.add_argument("--master", default="local[2]")
ap.add_argument("--partitions", type=int, default=0, help="repartition the input first (0: as read)")
ap.add_argument("--device", default="auto")
args = ap.parse_args()

# The workers run this interpreter (the one facegate is installed in).
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
spark = (
    SparkSession.builder.master(args.master)
    .appName("facegate-verify")
    # A local run stays on loopback.
    .config("spark.driver.host", "127.0.0.1")
    .config("spark.driver.bindAddress", "127.0.0.1")
    .config("spark.ui.enabled", "false")
    .getOrCreate()
)
pairs = spark.read.parquet(args.input)
if args.partitions:
    pairs = pairs.repartition(args.partitions)
decisions = pairs.mapInArrow(verify_arrow(images_root=args.images, device=args.device), OUTPUT_SCHEMA)
decisions.write.mode("overwrite").parquet(args.output)
spark.stop()
