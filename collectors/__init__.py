"""Reading clusters (kubelet Summary API, pod specs, Events) and a simulated fleet; they only publish records."""
