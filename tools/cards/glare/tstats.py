import json, csv, sys, numpy as np
from PIL import Image
sys.path.insert(0,'/work/main/tools/cards/glare'); import dcp
cond={r['image']:r for r in csv.DictReader(open('/tmp/h/cards-devtrain/conditions.tsv'),delimiter='\t')}
rows=[json.loads(l) for l in open(sys.argv[1])]
res={}
for o in rows:
    if not o.get('face'): continue
    img=np.asarray(Image.open(o['image']).convert('RGB'),np.float32)
    out=[]
    for win in (0.25,0.33,0.5):
        p=dict(dcp.DEFAULTS,win=win,sigma=0.33)
        t,ctx,s=dcp.transmission(img,o['face'],p)
        out.append(dcp.central_t(t,ctx,o['face']))
    g=cond[o['image']]['glare'] if o['image'] in cond else 'plain'
    res.setdefault(g,[]).append(out)
for g,v in res.items():
    v=np.array(v); print(g,len(v))
    for i,win in enumerate((0.25,0.33,0.5)):
        print('  win',win,'quantiles 5/25/50/75/95:',np.round(np.quantile(v[:,i],[.05,.25,.5,.75,.95]),3))
