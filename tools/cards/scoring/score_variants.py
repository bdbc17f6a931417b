"""The crop variants of variants.py, scored as analyze.py scores facegate's descriptors.
usage: score_variants.py pairsDevTrain.txt CARDS_DIR probes.npz cards.npz"""
import sys, os
from common import *
pairs=read_lfw_pairs(sys.argv[1]); cdir=sys.argv[2]
pz=np.load(sys.argv[3]); cz=np.load(sys.argv[4])
pk={os.path.abspath(n):k for k,n in enumerate(pz['names'])}; ck={os.path.abspath(n):k for k,n in enumerate(cz['names'])}
rows=[]
for pn,i,rn,j,same in pairs:
    c=os.path.join(cdir,"cards",os.path.basename(lfw_path(rn,j))) if cdir!="-" else lfw_path(rn,j)
    p=lfw_path(pn,i)
    if c in ck and p in pk: rows.append((p,pn,c,rn,same))
P=sorted({r[0] for r in rows}); R=sorted({r[2] for r in rows})
pp={r[0]:r[1] for r in rows}; rp={r[2]:r[3] for r in rows}
diff=np.array([[pp[p]!=rp[r] for r in R] for p in P])
pi={p:k for k,p in enumerate(P)}; ri={r:k for k,r in enumerate(R)}
print(len(rows),"pairs")
def nrm(E): return E/np.linalg.norm(E,axis=-1,keepdims=True)
PE=nrm(pz['embs'][[pk[p] for p in P]]); CE=nrm(cz['embs'][[ck[r] for r in R]])
def rep(tag,S):
    gen=np.array([S[pi[r[0]],ri[r[2]]] for r in rows if r[4]]); lim=np.array([S[pi[r[0]],ri[r[2]]] for r in rows if not r[4]])
    imp=S[diff]; o=[tag,"acc %.2f"%(100*best_accuracy(gen,lim))]
    for f in (1e-3,1e-4):
        t,fn,fr=fnmr_at(gen,imp,f); o.append("@%g FNMR %.2f"%(f,100*fn))
    print(" | ".join(o))
n = nrm
rep("base (Python crops)", PE[:, 0] @ CE[:, 0].T)
rep("grey, both", PE[:, 1] @ CE[:, 1].T)
rep("contrast standardised, both", PE[:, 2] @ CE[:, 2].T)
rep("contrast standardised, card only", PE[:, 0] @ CE[:, 2].T)
J = [0, 3, 4, 5, 6]
rep("five alignments averaged, card only", PE[:, 0] @ n(CE[:, J].sum(1)).T)
rep("five alignments averaged, both", n(PE[:, J].sum(1)) @ n(CE[:, J].sum(1)).T)
