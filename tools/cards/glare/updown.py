import json,csv,numpy as np,sys
V=sys.argv[1]
cond={r['image']:r for r in csv.DictReader(open('/tmp/h/cards-devtrain/conditions.tsv'),delimiter='\t')}
pairs=[r for r in csv.DictReader(open('/tmp/h/cards-devtrain/pairs.tsv'),delimiter='\t')]
L=lambda f:{json.loads(l)['image']:json.loads(l) for l in open(f)}
P,O,D=L('probes.jsonl'),L('orig.jsonl'),L(f'dcp-{V}.jsonl'); info=json.load(open(f'info-{V}.json'))
def c(a,b):
    if not(a and b): return -1.
    a,b=np.array(a),np.array(b); return a@b/np.linalg.norm(a)/np.linalg.norm(b)
for g in ['none','off_portrait','on_portrait']:
    ch=[];up=dn=0;up4=dn4=0
    for r in pairs:
        if cond[r['reference']]['glare']!=g: continue
        i=info[r['reference']]
        if i.get('oracle_box') or i.get('no_face'): continue
        p=P[r['probe']]['descriptor']; b=c(p,O[r['reference']]['descriptor']); a=c(p,D[f'/tmp/glare/cards-dcp-{V}/'+r['reference'].split('/')[-1]]['descriptor'])
        ch.append(a-b); up+=b<.2949<=a; dn+=a<.2949<=b; up4+=b<.4<=a; dn4+=a<.4<=b
    ch=np.array(ch); bs=[np.random.default_rng(k).choice(ch,len(ch)).mean() for k in range(2000)]
    print(V,g,len(ch),'mean %+.4f 95%%CI [%+.4f,%+.4f]'%(ch.mean(),*np.quantile(bs,[.025,.975])),'decreased',(ch<0).sum(),'| crossed 0.2949 up/down',up,dn,'| 0.40 up/down',up4,dn4)
