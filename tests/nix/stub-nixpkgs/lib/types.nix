# Option types with nixpkgs' names, checks and descriptions, for the types gojinn's module and the
# stub NixOS options use.
{ lib }:
let
  inherit (builtins)
    all
    attrNames
    concatMap
    filter
    head
    isAttrs
    isBool
    isFunction
    isInt
    isList
    isString
    mapAttrs
    ;
  inherit (lib) showOption;

  mkOptionType =
    {
      name,
      description ? name,
      check ? (_: true),
      merge ? mergeEqualOption,
    }:
    {
      _type = "option-type";
      inherit
        name
        description
        check
        merge
        ;
    };

  mergeEqualOption =
    loc: defs:
    let
      first = (head defs).value;
    in
    if all (def: def.value == first) defs then
      first
    else
      throw "The option `${showOption loc}' has conflicting definition values.";

  isStorePath = lib.isStorePath;

  # Merges the definitions of one attribute of an attribute-set option: each may be wrapped in
  # mkIf/mkOverride, as at the top.
  mergeAttrs =
    elemType: loc: defs:
    let
      values = filter isAttrs (map (def: def.value) defs);
      names = lib.unique (concatMap attrNames values);
      defsOf =
        name:
        map (value: {
          priority = 100;
          value = value.${name};
        }) (filter (value: value ? ${name}) values);
    in
    builtins.listToAttrs (
      map (name: {
        inherit name;
        value = lib.mergeDefinitions (loc ++ [ name ]) elemType (defsOf name);
      }) names
    );

  types = rec {
    bool = mkOptionType {
      name = "bool";
      description = "boolean";
      check = isBool;
    };
    str = mkOptionType {
      name = "str";
      description = "string";
      check = isString;
    };
    int = mkOptionType {
      name = "int";
      description = "signed integer";
      check = isInt;
    };
    port = mkOptionType {
      name = "port";
      description = "16 bit unsigned integer; between 0 and 65535 (both inclusive)";
      check = x: isInt x && x >= 0 && x <= 65535;
    };
    path = pathWith { absolute = true; };
    pathWith =
      {
        inStore ? null,
        absolute ? null,
      }:
      mkOptionType {
        name = "path";
        description =
          (if absolute == true then "absolute " else "")
          + "path"
          + (
            if inStore == true then
              " in the Nix store"
            else if inStore == false then
              " not in the Nix store"
            else
              ""
          );
        check =
          x:
          lib.isStringLike x
          && (absolute != true || lib.hasPrefix "/" (toString x))
          && (inStore == null || isStorePath x == inStore);
      };
    package = mkOptionType {
      name = "package";
      check = x: lib.isDerivation x || isStorePath x;
      merge =
        loc: defs:
        let
          first = (head defs).value;
        in
        if all (def: toString def.value == toString first) defs then
          first
        else
          throw "The option `${showOption loc}' has conflicting definition values.";
    };
    enum =
      values:
      mkOptionType {
        name = "enum";
        description = "one of ${lib.concatMapStringsSep ", " builtins.toJSON values}";
        check = x: builtins.elem x values;
      };
    nullOr =
      elemType:
      mkOptionType {
        name = "nullOr";
        description = "null or ${elemType.description}";
        check = x: x == null || elemType.check x;
        merge =
          loc: defs:
          let
            nulls = filter (def: def.value == null) defs;
          in
          if nulls == defs then
            null
          else if nulls != [ ] then
            throw "The option `${showOption loc}' is defined both null and not null."
          else
            elemType.merge loc defs;
      };
    listOf =
      elemType:
      mkOptionType {
        name = "listOf";
        description = "list of ${elemType.description}";
        check = x: isList x && all elemType.check x;
        merge = _loc: defs: concatMap (def: def.value) defs;
      };
    attrsOf =
      elemType:
      mkOptionType {
        name = "attrsOf";
        description = "attribute set of ${elemType.description}";
        check = isAttrs;
        merge = mergeAttrs elemType;
      };
    lazyAttrsOf = attrsOf;
    # Attribute sets merged attribute by attribute, lists concatenated, anything else equal.
    anything = mkOptionType {
      name = "anything";
      description = "anything";
      merge =
        loc: defs:
        let
          values = map (def: def.value) defs;
        in
        if all (x: isAttrs x && !lib.isDerivation x) values then
          mergeAttrs anything loc defs
        else if all isList values then
          concatMap (x: x) values
        else
          mergeEqualOption loc defs;
    };
    submodule =
      module:
      mkOptionType {
        name = "submodule";
        description = "submodule";
        check = x: isAttrs x || isFunction x;
        merge =
          loc: defs:
          let
            evaluated = lib.evalModules {
              modules = [ module ] ++ map (def: def.value) defs;
              prefix = loc;
              args.name = lib.last loc;
            };
          in
          if evaluated.undeclared != [ ] then
            throw "The option `${head evaluated.undeclared}' does not exist."
          else
            evaluated.config;
      };
  };
in
types
