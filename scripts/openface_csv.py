"""Reads an OpenFace 2.x FeatureExtraction CSV the way analysis scripts written for OpenFace do
(pandas, header names stripped of OpenFace's leading spaces, AU columns picked by their
`AUxx_r` / `AUxx_c` names) and prints, as JSON, each successful row's intensities and decisions.

Usage: openface_csv.py FILE.csv
"""

import json
import sys

import pandas as pd


def main(path):
    df = pd.read_csv(path)
    df.columns = df.columns.str.strip()
    ok = df[df["success"] == 1]
    r = ok.filter(regex=r"^AU\d\d_r$")
    c = ok.filter(regex=r"^AU\d\d_c$")
    rows = []
    for i in range(len(ok)):
        rows.append(
            {
                "frame": int(ok["frame"].iloc[i]),
                "face_id": int(ok["face_id"].iloc[i]),
                "r": {k[2:4]: float(v) for k, v in r.iloc[i].items()},
                "c": {k[2:4]: float(v) for k, v in c.iloc[i].items()},
            }
        )
    json.dump({"rows": rows, "r_columns": list(r.columns)}, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
