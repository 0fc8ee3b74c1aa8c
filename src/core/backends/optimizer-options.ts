/** The optimisers' hyper-parameters for one step, as training/optim.ts hands them to a backend's kernels. */

/** torch.optim.SGD's hyper-parameters for one step; `first` starts the momentum buffer at the gradient. */
export interface SgdOptions {
  lr: number;
  momentum: number;
  weightDecay: number;
  first: boolean;
}

/** torch.optim.Adam's hyper-parameters for one step, with this step's bias corrections. */
export interface AdamOptions {
  lr: number;
  beta1: number;
  beta2: number;
  epsilon: number;
  weightDecay: number;
  correction1: number;
  correction2: number;
}
