// The pod sandbox process of the cluster's pause image (no dependencies).
module surge.local/cluster/pause

go 1.22
